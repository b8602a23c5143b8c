"""Instrumentors (one module per SDK) and the machinery they share: the call lifecycle
(:mod:`.call`), stream and response proxies (:mod:`.streams`), the fail-open guard (:mod:`._guard`)
and provider detection (:mod:`.hosts`)."""
