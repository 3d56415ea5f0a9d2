"""labrouter.cluster: the daemons' announcements, their security and their transport.

``wire`` (packets, sealing, the receiving checks; no sockets), ``keys`` (keyring file format
and join codes), ``protocol`` (``GossipNode``: the protocol, no I/O, an injected clock),
``udp`` (``UdpTransport``: the sockets and the send filter), ``ratelimit`` (per-source
token buckets), ``interfaces`` (broadcast addresses, via psutil), ``service``
(``GossipService``: the node over the transport on an asyncio loop), ``monitor`` (this
node's own servers). The protocol is written down in docs/protocol.md.
Must not import app/ or desktop packages.
"""
