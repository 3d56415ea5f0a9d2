"""The answer window: a small window near the pointer that streams the answer, with Copy,
Replace selection, Retry on a stronger model, Cancel (Esc), a follow-up box and, for a bare
selection, a row of actions (explain, fix, summarise, translate, answer).

* ``protocol.py``: the JSON-lines messages between the daemon side and the window process;
* ``window.py``: the Tk window, run as its own process (``python -m
  labrouter.desktop.answer.window``);
* ``render.py``: the streamed Markdown as styled spans (pure);
* ``actions.py``: the actions for a bare selection and which one fits (pure);
* ``controller.py``: the daemon side (asyncio): starts the window, feeds it
  ``Asker.stream`` events and does what the user asks.

Importing this package imports neither tkinter nor the daemon. Must not import
``labrouter.autostart`` or ``labrouter.app``.
"""
