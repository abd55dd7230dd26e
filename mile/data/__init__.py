"""Datasets, images and the records they yield; knows nothing of the model.

- `registry.load_dataset(name, root, split, **options)`: SLAKE, VQA-RAD (train/test/public), generic JSON/JSONL;
- `records`: `LoadResult` (samples + `BadRecords` report) and `check_bad_fraction`;
- `images` / `augment`: safe decoding to RGB, resize, normalisation presets, mild training augmentation;
- `paths`: image paths that cannot escape the dataset root; `errors`: `DataError` and its subclasses.

Kept import-free so that `mile.data.errors` or `mile.data.sample` can be imported without pulling in torch.
"""
