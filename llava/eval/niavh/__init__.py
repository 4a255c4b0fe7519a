"""Needle In A Video Haystack (NIAVH): the VideoLLaMB needle benchmark, without the original's defects.

    python -m llava.eval.niavh --modality image --lengths 8,16 --depths 0,50,100 --output runs/niavh

haystack.py (background videos), needles.py (text / image / video needles and their questions), grid.py
(lengths x depths, needle placement), scoring.py (circular multiple choice, exact / keyword, LLM judge),
runner.py (the cached, resumable loop over `generate(instruction, video_path) -> str`), report.py
(summary.json and heatmaps), cli.py (the command line).
"""
