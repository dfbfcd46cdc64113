"""cluster.yaml passes Ray's own cluster-launcher validation, and keeps the promises the README
makes about it: GPU worker types that scale to zero, the pinned Ray image, roles instead of keys."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
PYPROJECT = CLUSTER_YAML.parent / "pyproject.toml"
# Keys the Ray AWS provider reads from node_config on top of EC2 RunInstances' own parameters.
RAY_AWS_NODE_CONFIG_KEYS = {"SubnetIds", "SecurityGroupIds"}


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validate(config: dict) -> dict:
    """What `ray up` does before it touches AWS: fill in defaults, then schema-validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _ec2_run_instances_parameters() -> set[str]:
    # botocore ships the EC2 API model, so this needs no network and no credentials.
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return set(model.operation_model("RunInstances").input_shape.members)


def test_cluster_yaml_passes_ray_autoscaler_validation():
    prepared = _validate(_load())
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == {"head", "gpu-score", "gpu-train"}


@pytest.mark.parametrize("mutate, unexpected", [
    (lambda c: c.update(idle_timeout_minute=5), "idle_timeout_minute"),
    (lambda c: c["available_node_types"]["gpu-score"].update(min_worker=0), "min_worker"),
    (lambda c: c["docker"].update(worker_imag="rayproject/ray:2.60.0-py311-gpu"), "worker_imag"),
])
def test_a_typo_in_cluster_yaml_fails_ray_validation(mutate, unexpected):
    import jsonschema

    config = _load()
    mutate(config)
    with pytest.raises(jsonschema.ValidationError, match=unexpected):
        _validate(config)


def _unknown_node_config_keys(config: dict) -> dict[str, list[str]]:
    # Ray hands node_config to EC2 unchecked, so a typo there would only fail at `ray up` time.
    allowed = _ec2_run_instances_parameters() | RAY_AWS_NODE_CONFIG_KEYS
    unknown = {name: sorted(set(node_type["node_config"]) - allowed)
               for name, node_type in config["available_node_types"].items()}
    return {name: keys for name, keys in unknown.items() if keys}


def test_node_configs_use_only_real_ec2_parameters():
    assert _unknown_node_config_keys(_load()) == {}


def test_a_typo_in_a_node_config_is_caught():
    config = _load()
    node_config = config["available_node_types"]["gpu-train"]["node_config"]
    node_config["InstanceTyp"] = node_config.pop("InstanceType")
    assert _unknown_node_config_keys(config) == {"gpu-train": ["InstanceTyp"]}


def test_gpu_worker_types_scale_to_zero_and_idle_out():
    config = _load()
    types = config["available_node_types"]
    assert types["gpu-score"]["node_config"]["InstanceType"] == "g5.xlarge"
    assert types["gpu-score"]["resources"]["GPU"] == 1
    assert types["gpu-train"]["node_config"]["InstanceType"] == "g5.12xlarge"
    assert types["gpu-train"]["resources"]["GPU"] == 4
    for name in ("gpu-score", "gpu-train"):
        assert types[name]["min_workers"] == 0, f"{name} would keep GPUs running all day"
        assert 0 < types[name]["max_workers"] <= config["max_workers"]
    assert not types["head"]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 0 < config["idle_timeout_minutes"] <= 30


def test_images_match_the_pinned_ray_version():
    import ray

    pinned = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', PYPROJECT.read_text()).group(1)
    assert pinned == ray.__version__
    docker = _load()["docker"]
    for key in ("image", "head_image", "worker_image"):
        assert docker[key].startswith(f"rayproject/ray:{pinned}-py311"), docker[key]
    assert docker["worker_image"].endswith("-gpu")


def test_nodes_get_s3_access_from_an_instance_profile_and_no_keys_are_in_the_file():
    for name, node_type in _load()["available_node_types"].items():
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY\s*[=:]", text)


def test_user_specific_values_are_marked_for_change():
    text = CLUSTER_YAML.read_text()
    for line_start in ("region:", "KeyName:", "SubnetIds:", "Arn:", "ssh_private_key:"):
        lines = [line for line in text.splitlines() if line.strip().startswith(line_start)]
        assert lines and all("CHANGE" in line for line in lines), line_start


def test_every_node_gets_the_cluster_token_and_starts_with_token_auth():
    # Without the token a worker could not join a 2.60 head, and without token mode anyone who
    # reaches the dashboard port could submit jobs.
    config = _load()
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
