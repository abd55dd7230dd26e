"""Instruction-format medical VQA data (the MILE paper's instruction-tuning study; DESIGN.md section 4).

- `templates`: template sets as data (`mile/resources/templates/mile.yaml` holds the authors' six), validated;
- `options`: answer options for the prompts (yes/no opposites, same-type distractors), seeded per record;
- `build`: SLAKE / VQA-RAD splits -> instruction records in the authors' format (`build_instruction_data`);
- `dataset`: read ours or the authors' release into `Sample`s (`load_instruction`) and choose the prompt per
  epoch (`PromptChooser`);
- `registry`: every dataset a run can name, `mile.data.registry`'s plus `instruct` (`load_dataset`);
- `leaks`: train/test overlap guard; `truncation`: how many prompts the 35-token limit cuts.

Kept import-free: importing one module (e.g. `build`, which needs only `mile.data`) loads only what it needs.
"""
