"""labrouter.autostart"""
