#!/usr/bin/env bash
# Installs what the `desktop` tests (tests/test_desktop_e2e.py) and bench/hotkey.py need on
# Debian/Ubuntu: a virtual X server, input and clipboard tools, a private D-Bus session and
# a notification server, a tray host, and Tk for the window with selected text.
# See ../shared/research/desktop-ci.md (about 20 s of apt on a warm cache).
#
# Usage: sudo .ci/desktop-setup.sh        (idempotent; prints what it installed)
set -euo pipefail

PACKAGES=(
    xvfb            # the X server (Xvfb -displayfd)
    x11-utils       # xdpyinfo: is the X server up
    xdotool         # presses the hotkey like a person (keydown / key / keyup)
    xclip           # reads and seeds PRIMARY and CLIPBOARD; also labrouter's X11 clipboard
    dbus            # dbus-daemon, dbus-monitor, dbus-send: the private session bus
    dbus-x11        # dbus-launch (not needed by the tests; handy for manual runs)
    dunst           # the notification server (org.freedesktop.Notifications), dunstctl
    libnotify-bin   # notify-send: labrouter's Linux notification backend
    libglib2.0-bin  # gdbus: the second Linux notification backend
    trayer          # a system tray host (_NET_SYSTEM_TRAY_S0) for the X11 tray (xembed)
    xterm           # the focused terminal the hotkey must not type into
    fonts-dejavu-core # the font the X11 tray's menu is drawn with
    python3-tk      # Tk for the system python; a pyenv/uv Python needs its own tkinter
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "installed: ${missing[*]}"
else
    echo "all desktop test packages already installed"
fi
python3 -c "import tkinter" 2>/dev/null || echo "note: this python has no tkinter"
