"""Benchmark evaluation: answer extraction, grading, metrics and reports.

Submodules are imported directly (`from cft.evaluate.grade import ...`); this
package import stays light so pure modules never pull in sympy or matplotlib.
"""
