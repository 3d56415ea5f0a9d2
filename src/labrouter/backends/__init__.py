"""labrouter.backends"""
