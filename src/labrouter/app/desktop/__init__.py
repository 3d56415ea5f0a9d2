"""The desktop app, split by job: ``app.py`` (a press -> the question -> the answer, the
menu actions), ``parts.py`` (choosing the backends), ``login.py`` (start at login),
``opener.py`` (open a file or the usage page with the desktop's application; the page
itself is ``app/usagepage.py``). ``app/desktop_app.py`` wires them to the daemon."""
