"""A toy evaluation protocol, the whole of what adding one takes (tests/test_extending.py).

``every_other_user``: leave-last-basket-out on every second test user. Its per-user metrics must
equal leave-last-basket-out's on the same users (same candidates, profiles and truth).
"""
import numpy as np

from visrec_utils.catalogue.protocols import Protocol, leave_last_basket_out
from visrec_utils.catalogue.splits import subset_split


def every_other_user(cat, availability="auto", one_of_a_kind=False):
    full = leave_last_basket_out(cat, availability=availability, one_of_a_kind=one_of_a_kind)
    keep = np.arange(0, full.n_users, 2)
    return subset_split(full, keep, [full.truth[i] for i in keep], protocol="every_other_user")


PROTOCOL = Protocol("every_other_user", "leave-last-basket-out on every second test user",
                    ("availability", "one_of_a_kind"), every_other_user)
