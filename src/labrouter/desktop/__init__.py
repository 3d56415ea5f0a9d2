"""labrouter.desktop"""
