"""Integrations of trmask with trainers and frameworks (verl, torch.distributed). They depend on
trmask's public API; trmask's core never imports them (python/tests/test_layout.py checks)."""
