"""Instruction-format medical VQA data (the MILE paper's instruction-tuning study; DESIGN.md section 4).

- `templates`: template sets as data (`mile/resources/templates/mile.yaml` holds the authors' six), validated;
- `options`: answer options for the prompts (yes/no opposites, same-type distractors), seeded per record;
- `build`: SLAKE / VQA-RAD splits -> instruction records in the authors' format (`build_instruction_data`);
- `dataset`: read ours or the authors' release into `Sample`s (`load_instruction`, registry name `instruct`) and
  choose the prompt per epoch (`PromptChooser`);
- `leaks`: train/test overlap guard; `truncation`: how many prompts the 35-token limit cuts.

Kept import-free: `mile.data.registry` imports `mile.instruct.dataset`, and `build` imports the registry.
"""
