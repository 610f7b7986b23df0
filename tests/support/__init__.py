"""What the tests share and are not tests themselves: the API harness, engine fakes, audio
and documents to feed in, proxies and gates.

Every test imports these one way, ``from tests.support.<module> import ...``, and no test
module imports another: what two test modules share lives here. A helper that serves one
folder's tests only stays in that folder as a private module (``tests/faults/_processes.py``,
``tests/fuzz/_live_api.py``, ``tests/serve/_app.py``).
"""
