"""What is rendered: session files, tracks, instruments, MIDI timelines, inputs and take ids. No host library."""
