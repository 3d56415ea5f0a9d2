"""labrouter.cluster"""
