"""The store: blocks in, a dataset on disk out (docs/dataset.md).

One writer per stream keeps durable work files while the stream is open (``writer``) and turns
them into the public files when it ends (``finalise``). It owns its own record format and knows
nothing of the wire: the receiver and the offline producers both hand it blocks.
"""
