"""SODA: self-paced distillation for code generation (``../shared/seeds/soda-self-paced-kd.txt``).

The teacher teaches through its text, so teacher and student need not share a tokenizer: Stage I
delivers correct and faulty solutions (supervised, then contrastive learning), Stage II scores
the student's own solutions by execution and by a judge, Stage III turns that feedback into
difficulty levels and new questions for the next cycle.
"""
