"""The engine's lifecycle (seed 003 §9.3, §10, §11): stability, the byte budget, recommendations."""
