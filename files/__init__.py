"""Files written safely, for every layer that writes: aside-then-rename (``aside``) and an
append-only checksummed record log (``records``). No knowledge of what the files hold."""
