"""The tests' wrappers of a model's training objective share this base: the wrapped ELBO as ``inner``, and
its held-start weight forwarded, since the training loop schedules ``hold`` on the ELBO object it is given."""


class WrappedObjective:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    @property
    def hold(self):
        return self.inner.hold

    @hold.setter
    def hold(self, value):
        self.inner.hold = value
