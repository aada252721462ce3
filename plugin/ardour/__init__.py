"""Ardour 7 sessions rendered through the capture chain: Ardour headless (``ardour7-lua``) plays
a copy of the session into a private JACK server in freewheel, and the live bridge captures it
(docs/session.md, "Ardour sessions")."""
