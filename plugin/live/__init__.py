"""The live JACK bridge: a process whose callback only copies into shared memory, the playhead from
the JACK transport, and virtual MIDI ports."""
