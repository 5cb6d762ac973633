"""Synthetic data for the demo, the tests and the bundled models' trainers, drawn from the shapes domain
(model/scenes.py). Plain Python, no Beam:

    defects.py        the defects planted in the web dataset, one per pair, and their proportions
    images.py         image planters: sizes, encoders, undecodable and truncated bytes
    captions.py       caption planters: markup, URLs, emoji, other scripts, lengths, mismatches
    records.py        one pair per index with its defect planted, made in parallel
    dataset.py        writes the web dataset `vlcurate clean` reads (WebDataset, Parquet, JSONL) + truth
    scene_tasks.py    QAs, grounding phrases and boxes, text dialogues true of a scene
    sft_inputs.py     writes the demo's `vlcurate sft` inputs and their config
    stage2_inputs.py  writes the demo's `vlcurate format --stage 2` input from the SFT inputs
    progress.py       `vlcurate synth`'s progress lines
"""
