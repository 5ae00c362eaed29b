"""Two stops of one user at once (Locust's --run-time and queuestorm's own end of the test)."""

import pytest
from locust.env import Environment
from locust.user.users import LOCUST_STATE_RUNNING, LOCUST_STATE_STOPPING

from queuestorm.locust.dyno import DynoWorkerUser
from queuestorm.locust.generator_users import ConsumerUser, GeneratorUser
from queuestorm.locust.users import EnqueueUser


@pytest.mark.parametrize("user_class", [EnqueueUser, DynoWorkerUser, GeneratorUser, ConsumerUser])
def test_a_second_graceful_stop_waits_for_the_first(user_class):
    user = user_class(Environment(user_classes=[user_class]))
    user._state = LOCUST_STATE_RUNNING
    assert user.stop() is False and user._state == LOCUST_STATE_STOPPING
    assert user.stop() is False and user._state == LOCUST_STATE_STOPPING  # Locust's own raises here
