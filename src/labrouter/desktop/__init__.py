"""The desktop: tray, global hotkey, selection capture and notifications.

Each capability is a small interface with one backend per library or platform and a null
backend (headless, tests), chosen at run time by ``backends.choose``;
``LABROUTER_<CAPABILITY>_BACKEND`` forces one and the reasons the others gave are kept for
``labrouter doctor``:

* ``tray.py``: the tray icon and its menu (pystray) -- main thread only, updates from any;
* ``hotkey.py``: the global hotkey (pynput) -- its own listener thread;
* ``selection.py``: clipboard (xclip, wl-clipboard, pyperclip) and the copy keystroke
  (pynput), and the capture that never loses the user's clipboard -- blocking, worker
  threads only;
* ``notify.py``: notifications, plyer first with a checked fallback chain -- blocking,
  worker threads only;
* ``icons.py``: the icon images (Pillow).

Importing this package imports no desktop library (pystray, pynput, plyer, pyperclip,
Pillow): each is imported inside the backend that uses it, so a headless server never
loads them. Must not import ``labrouter.autostart`` (``app/desktop_app.py`` wires the two).
"""
