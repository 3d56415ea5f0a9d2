"""The desktop app, split by job: ``app.py`` (a press -> the question -> the answer, the
menu actions), ``parts.py`` (choosing the backends), ``login.py`` (start at login),
``opener.py`` (open a file with the desktop's application), ``usage_report.py`` (the
usage summary the tray opens). ``app/desktop_app.py`` wires them to the daemon."""
