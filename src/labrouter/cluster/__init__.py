"""labrouter.cluster: the daemons' announcements, their security and their transport.

``wire`` (packets, sealing, the receiving checks; no sockets), ``keys`` (keyring file format
and join codes), ``gossip`` (``GossipNode``: the protocol with an injected clock;
``UdpTransport``/``GossipService``: the sockets), ``monitor`` (this node's own servers).
The protocol is written down in docs/protocol.md. Must not import app/ or desktop packages.
"""
