"""labrouter.app"""
