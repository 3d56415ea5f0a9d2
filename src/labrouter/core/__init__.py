"""labrouter.core"""
