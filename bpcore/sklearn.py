"""scikit-learn estimators on bpcore's engine: ``MLPClassifier`` and ``MLPRegressor``.

Drop-ins for ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` (scikit-learn 1.9's
parameters, defaults and meanings), trained by bpcore's native ``fit`` (SGD, Adam) and its
full-batch gradient (L-BFGS through scipy). scikit-learn is an optional dependency
(``pip install bpcore[sklearn]``): ``import bpcore`` never imports it, this module does.

What follows scikit-learn exactly and what does not is in SKLEARN_NOTES.md at the repository
root (first slice of issue 11: no partial_fit, warm_start or early_stopping yet).
"""
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as _SkClassifier
    from sklearn.neural_network import MLPRegressor as _SkRegressor
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import (check_is_fitted, column_or_1d, validate_data,
                                          _check_sample_weight)
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("bpcore.sklearn needs scikit-learn: pip install 'bpcore[sklearn]'") from exc

from scipy.special import expit, xlogy

from bpcore import training
from bpcore.layers import Dense
from bpcore.losses import BCEWithLogitsLoss, MSELoss, PoissonLoss, SoftmaxCrossEntropyLoss
from bpcore.model import MLP
from bpcore.optim import SGD, Adam
from bpcore.schedules import InverseScalingLR

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's hidden activations by bpcore's names
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


class _Head:
    """The output side of one estimator's network: bpcore's loss on the logits, the output
    activation applied at prediction, and how bpcore's mean loss relates to scikit-learn's.

    ``c``: bpcore's mean-reduction gradient is c times scikit-learn's (the optimizers are set
    so that the steps are scikit-learn's); ``reported(bp_mean, const)``: scikit-learn's loss
    from bpcore's mean loss; ``sum_scale``: the factor of the native summed loss that makes
    scikit-learn's data loss times sw_sum (for L-BFGS's objective)."""

    def __init__(self, out_activation, n_outputs):
        self.out_activation = out_activation
        m = n_outputs
        if out_activation == "softmax":
            self.loss, self.c, self.per_mean, self.sum_scale = SoftmaxCrossEntropyLoss(), 1.0, 1.0, 1.0
        elif out_activation == "logistic":
            # scikit-learn's binary log loss sums over the outputs and averages over rows
            self.loss, self.c, self.per_mean, self.sum_scale = BCEWithLogitsLoss(), 1.0 / m, m, 1.0
        elif out_activation == "exp":
            # half the Poisson deviance summed over the outputs; differs from bpcore's
            # exp(z) - t z by a constant of the targets (added to the reported loss)
            self.loss, self.c, self.per_mean, self.sum_scale = PoissonLoss(), 1.0 / m, m, 1.0
        else:
            # scikit-learn reports 1/2 mean over all elements but steps on the gradient of
            # 1/2 sum / n_rows (its issue #8349): bpcore's steps are those steps
            self.loss, self.c, self.per_mean, self.sum_scale = MSELoss(), 2.0 / m, 0.5, 0.5

    def reported(self, bp_mean, const=0.0):
        return bp_mean * self.per_mean + const

    def activate(self, Z):
        if self.out_activation == "softmax":
            Z = Z - Z.max(axis=1, keepdims=True)
            np.exp(Z, out=Z)
            Z /= Z.sum(axis=1, keepdims=True)
        elif self.out_activation == "logistic":
            Z = expit(Z)
        elif self.out_activation == "exp":
            Z = np.exp(Z)
        return Z


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: initialisation, the two kinds of
    training, prediction through the engine, pickling."""

    _parameter_constraints = dict(_SkRegressor._parameter_constraints)

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (as scikit-learn's MLP; see SKLEARN_NOTES.md)."""
        self._validate_params()
        if self.warm_start:
            raise NotImplementedError("warm_start=True: not implemented yet in bpcore.sklearn "
                                      "(see SKLEARN_NOTES.md)")
        if self.early_stopping:
            raise NotImplementedError("early_stopping=True: not implemented yet in "
                                      "bpcore.sklearn (see SKLEARN_NOTES.md)")
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        X, T = self._validate_input(X, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        n, n_features = X.shape
        self.n_outputs_ = self._n_outputs
        self.n_layers_ = len(hidden) + 2
        self.n_iter_ = 0
        self.t_ = 0
        self.out_activation_ = self._out_activation
        units = [n_features] + hidden + [self.n_outputs_]
        rng = check_random_state(self.random_state)
        model = MLP(units, activation=_ACTIVATIONS[self.activation], dtype=X.dtype, seed=0)
        # scikit-learn's Glorot-uniform draws, in its order (W then b, layer by layer): the
        # same random_state gives the same initial weights as scikit-learn's
        factor = 2.0 if self.activation == "logistic" else 6.0
        for d in _dense(model):
            bound = np.sqrt(factor / (d.fan_in + d.fan_out))
            d.W[...] = rng.uniform(-bound, bound, (d.fan_in, d.fan_out)).astype(X.dtype)
            d.b[...] = rng.uniform(-bound, bound, d.fan_out).astype(X.dtype)
        self._model = model
        head = _Head(self.out_activation_, self.n_outputs_)
        const = self._loss_constant(T, sample_weight)
        if self.solver == "lbfgs":
            self._fit_lbfgs(model, head, X, T, sample_weight, const)
        else:
            self._fit_stochastic(model, head, X, T, sample_weight, const, rng)
        self.coefs_ = [d.W.copy() for d in _dense(model)]
        self.intercepts_ = [d.b.copy() for d in _dense(model)]
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _loss_constant(self, T, sample_weight):
        """What scikit-learn's Poisson loss adds to bpcore's (a constant of the targets)."""
        if self._out_activation != "exp":
            return 0.0
        per_row = (xlogy(T, T) - T).reshape(T.shape[0], -1).sum(axis=1)
        return float(np.average(per_row, weights=sample_weight))

    def _groups(self, model, weight_decay):
        """Parameter groups: L2 on the weights only, none on the biases (scikit-learn's)."""
        params = model.parameters()
        return [{"params": [p for p in params if p.name == "W"], "weight_decay": weight_decay},
                {"params": [p for p in params if p.name == "b"], "weight_decay": 0.0}]

    def _fit_stochastic(self, model, head, X, T, sample_weight, const, rng):
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        c = head.c
        # scikit-learn's L2 gradient alpha * W / batch_size, in bpcore's gradient units
        decay = c * self.alpha / batch_size
        if self.solver == "sgd":
            optimizer = SGD(self._groups(model, decay), lr=self.learning_rate_init / c,
                            momentum=self.momentum,
                            nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        else:
            # scaling the gradient by c scales Adam's moments: eps scales with it
            optimizer = Adam(self._groups(model, decay), lr=self.learning_rate_init,
                             betas=(self.beta_1, self.beta_2), eps=self.epsilon * c,
                             eps_form="sklearn")
        schedule = None
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            schedule = InverseScalingLR(self.power_t)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        n_batches = -(-n // batch_size)
        weight = n if sample_weight is None else float(np.sum(sample_weight))
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.best_loss_ = np.inf
        self.validation_scores_ = None
        self.best_validation_score_ = None
        dense = _dense(model)

        def squares():
            with np.errstate(over="ignore", invalid="ignore"):  # diverged: fit then raises
                return sum(float(np.dot(d.W.ravel(), d.W.ravel())) for d in dense)

        state = {"stopped": False, "squares": squares()}

        def after_epoch(epoch, logs):
            # scikit-learn adds 1/2 alpha |W|^2 / batch_size to each batch's loss, with W as
            # that batch found it; fit hands back the epoch only: |W|^2 is taken as the mean of
            # the epoch's first and last (the data term is exact)
            sq = squares()
            mean_sq, state["squares"] = 0.5 * (state["squares"] + sq), sq
            self.loss_ = head.reported(logs["loss"], const) + \
                n_batches * 0.5 * self.alpha * mean_sq / weight
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
            if self._no_improvement_count > self.n_iter_no_change:
                msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                       "epochs." % (self.tol, self.n_iter_no_change))
                if adaptive and optimizer.lr * c > 1e-6:
                    optimizer.lr = optimizer.lr / 5.0
                    if self.verbose:
                        print(msg + " Setting learning rate to %f" % (optimizer.lr * c))
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + (" Learning rate too small. Stopping." if adaptive
                                     else " Stopping."))
                    state["stopped"] = True
                    return True
            return False

        history = model.fit(X, T, loss=head.loss, optimizer=optimizer, epochs=self.max_iter,
                            batch_size=batch_size, shuffle=bool(self.shuffle),
                            seed=int(rng.randint(np.iinfo(np.int32).max)), schedule=schedule,
                            callbacks=[after_epoch], sample_weight=sample_weight,
                            on_nonfinite="stop")
        if "stopped" in history:
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        if not state["stopped"] and self.n_iter_ == self.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % self.max_iter,
                          ConvergenceWarning)

    def _fit_lbfgs(self, model, head, X, T, sample_weight, const):
        from scipy.optimize import minimize
        from sklearn.utils.optimize import _check_optimize_result

        eng = training.engine_for(model)
        X = np.ascontiguousarray(X)
        kind, target = head.loss.target_for(T, X.shape[0], model.n_outputs, model.dtype)
        eng.check_data(X, target, kind)
        w_rows = None if sample_weight is None else np.ascontiguousarray(sample_weight,
                                                                         model.dtype)
        sw_sum = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        scale = head.sum_scale / sw_sum
        pw = head.loss.native_pos_weight(model.dtype, model.n_outputs)
        is_w = np.zeros(model.flat_params.size, bool)
        for p in model.parameters():
            if p.name == "W":
                is_w[p.offset:p.offset + p.size] = True
        alpha = self.alpha

        def objective(w):
            model.flat_params[...] = w
            value = eng.loss_and_gradient(X, target, kind, scale, pw, w_rows)
            grad = model.flat_grads.astype(np.float64)
            ww = w[is_w]
            value += 0.5 * alpha * float(np.dot(ww, ww)) / sw_sum
            grad[is_w] += alpha * ww / sw_sum
            return value, grad

        result = minimize(objective, model.flat_params.astype(np.float64), jac=True,
                          method="L-BFGS-B",
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                   "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun) + const
        model.flat_params[...] = result.x

    # -- prediction ------------------------------------------------------------------------

    def _forward(self, X):
        """The output activation of the network for X, from coefs_ and intercepts_ (as they
        are now: assigning them changes the predictions, as in scikit-learn)."""
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        dtype = self.coefs_[0].dtype
        model = getattr(self, "_model", None)
        sizes = [w.shape[0] for w in self.coefs_] + [self.coefs_[-1].shape[1]]
        if model is None or model.sizes != sizes or model.dtype != dtype:
            model = MLP(sizes, activation=_ACTIVATIONS[self.activation], dtype=dtype, seed=0)
            self._model = model
        for d, w, b in zip(_dense(model), self.coefs_, self.intercepts_):
            d.W[...] = w
            d.b[...] = b
        Z = training.predict(model, np.ascontiguousarray(X, dtype))
        return _Head(self.out_activation_, self.n_outputs_).activate(Z)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_model", None)  # the native network is rebuilt from coefs_ when needed
        return state


def _dense(model):
    return [m for m in model.layers if isinstance(m, Dense)]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` (same parameters,
    defaults, attributes and methods) trained by bpcore. Softmax output for multiclass
    targets, logistic for binary and multi-label ones."""

    _parameter_constraints = dict(_SkClassifier._parameter_constraints)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def _validate_input(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        self._label_binarizer = LabelBinarizer()
        self._label_binarizer.fit(y)
        self.classes_ = self._label_binarizer.classes_
        Y = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            self._out_activation = "softmax"
            self._n_outputs = Y.shape[1]
            return X, np.argmax(Y, axis=1).astype(np.intp)
        self._out_activation = "logistic"
        self._n_outputs = Y.shape[1]
        return X, np.ascontiguousarray(Y, X.dtype)

    def predict(self, X):
        """The predicted classes (n_samples,), or the indicator matrix of multi-label
        targets."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict_proba(self, X):
        """Probability of each class (n_samples, n_classes), in the order of classes_."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` (same parameters,
    defaults, attributes and methods) trained by bpcore. ``loss="squared_error"`` (identity
    output) or ``"poisson"`` (exp output, trained on log-rates)."""

    _parameter_constraints = dict(_SkRegressor._parameter_constraints)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def _validate_input(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        self._out_activation = "exp" if self.loss == "poisson" else "identity"
        self._n_outputs = Y.shape[1]
        return X, np.ascontiguousarray(Y, X.dtype)

    def predict(self, X):
        """The predicted values (n_samples,), or (n_samples, n_outputs) for several."""
        y_pred = self._forward(X)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred
