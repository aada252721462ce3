"""Effect chains (pedalboard) and recordings fed block by block through the capture processor, with automation."""
