"""Which training recipe makes mile-small use its question and image? A quick experiment, not a run: F-T-T
(frozen ViT, image states computed once) on VQA-RAD train for --steps optimizer steps, then the VQA-RAD test
answer loss with true / shuffled images / shuffled questions and greedy accuracy (docs/results.md section 2).

    OMP_WAIT_POLICY=PASSIVE python scripts/recipe_probe.py --steps 300 [--lr 1e-4] [--lr-new 1e-3] [--zero-cross]
"""

import argparse
import collections
import time

import torch

from mile.config import load_config
from mile.engine.batches import Collate
from mile.engine.build import build_session
from mile.engine.datasets import load_split, load_train
from mile.engine.metrics import score
from mile.engine.optim import make_optimizer, make_scheduler
from mile.model.generation import GenerationConfig, generate

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=300)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--lr-new", type=float, default=1e-3)
p.add_argument("--zero-cross", action="store_true", help="zero-init cross-attn output projections")
p.add_argument("--size", type=int, default=112)
a = p.parse_args()
torch.manual_seed(0)
cfg = load_config(
    "configs/vqa_rad/mile-small.yaml",
    [f"model.image_size={a.size}", f"train.lr={a.lr}", f"train.lr_new={a.lr_new}", "train.warmup_ratio=0.05"],
)
s = build_session(cfg)
m = s.model
if a.zero_cross:
    with torch.no_grad():
        for n, mod in m.named_modules():
            if n.endswith("cross_attn.o"):
                mod.weight.zero_()
                mod.bias.zero_()
train = load_train(cfg).samples
test = load_split(cfg, "test").samples
tf = s.transform(False)
col = Collate(s.tokenizer)
states = {}
with torch.no_grad():
    m.vision.eval()
    imgs = sorted({str(x.image) for x in train + test})
    for i in range(0, len(imgs), 64):
        chunk = imgs[i : i + 64]
        out = m.encode_image(torch.stack([tf(c) for c in chunk]))
        states.update(zip(chunk, out, strict=True))


def batch_of(samples):
    b = col(
        [
            {"index": i, "image": str(x.image), "question": x.question, "answer": x.answer}
            for i, x in enumerate(samples)
        ]
    )
    b["image_states"] = torch.stack([states[str(x.image)] for x in samples])
    return b


opt = make_optimizer(m, cfg.train, s.adapter_names(), s.fresh_names())
sched = make_scheduler(opt, cfg.train, a.steps)
g = torch.Generator().manual_seed(0)
m.train()
t0 = time.time()
step = 0
while step < a.steps:
    for idx in torch.randperm(len(train), generator=g).split(16):
        if step >= a.steps:
            break
        b = batch_of([train[i] for i in idx])
        out = m(
            b["question_ids"],
            b["question_mask"],
            b["answer_ids"],
            b["answer_mask"],
            image_states=b["image_states"],
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {out.loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
m.eval()
with torch.no_grad():
    b = batch_of(test)
    perm = torch.randperm(len(test), generator=g)

    def L(q, qm, st):
        qs = m.encode_question(q, qm, st)
        h = m.text_decoder(b["answer_ids"], b["answer_mask"], context=qs, context_mask=qm)
        return m.answer_loss(m.text_decoder.logits(h), b["answer_ids"], b["answer_mask"]).item()

    q, qm, st = b["question_ids"], b["question_mask"], b["image_states"]
    print(
        f"test loss true {L(q, qm, st):.3f} shuf-img {L(q, qm, st[perm]):.3f} shuf-q {L(q[perm], qm[perm], st):.3f}"
    )
    ids = generate(m, q, qm, image_states=st, config=GenerationConfig(num_beams=1))
    preds = s.tokenizer.decode(ids)
met = score([(pr, x.answer, x.answer_type) for pr, x in zip(preds, test, strict=True)])
print(
    "closed",
    met["rules"]["answer_type"]["closed"]["acc"],
    "open",
    met["rules"]["answer_type"]["open"]["acc"],
    "global",
    met["global"]["acc"],
)
print(collections.Counter(preds).most_common(6))
