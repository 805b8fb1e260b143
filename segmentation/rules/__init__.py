"""Segment rules: the canonical tree (``ast``), its text syntax (``dsl``), the SQL compiler
(``compile``) and the plain-Python evaluator (``evaluate``) that serves as the test oracle and
as the engine behind ``explain``. See ``docs/segments.md`` for the grammar.
"""
