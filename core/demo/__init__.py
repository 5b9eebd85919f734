"""The demo: a workspace that rewrites dates as YYYY-MM-DD, its eval sets and training data,
the bundled SmolLM2-135M-Instruct model, and the headless journey through all six phases.
"""
