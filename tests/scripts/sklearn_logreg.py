"""A scikit-learn sweep script as W&B users write it, after W&B's scikit-learn sweep example (wandb/examples,
``examples/scikit/scikit-classification``, and the W&B docs' "Tune hyperparameters" walkthrough): the defaults go
to ``wandb.init(config=...)``, the sweep overrides them, and a LogisticRegression is trained with ``config.C``.

scikit-learn validates ``C`` as a real number, so a ``C: 1e-05`` that reached ``wandb.config`` as the string
``'1e-05'`` fails the run with InvalidParameterError, as it did under sweepflow before the param file was written
the way wandb's agent writes it.
"""

import wandb
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

run = wandb.init(config={"C": 1.0, "max_iter": 200, "solver": "lbfgs"})
config = run.config

X, y = load_breast_cancer(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(X_train)
model = LogisticRegression(C=config.C, max_iter=config.max_iter, solver=config.solver)
model.fit(scaler.transform(X_train), y_train)
wandb.log(
    {
        "val_acc": model.score(scaler.transform(X_val), y_val),
        "train_acc": model.score(scaler.transform(X_train), y_train),
    }
)
run.finish()
