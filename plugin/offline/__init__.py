"""Offline hosts: DawDreamer and FluidSynth renders of a session, fed through the capture processor."""
