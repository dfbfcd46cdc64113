"""cluster.yaml passes Ray's own cluster-launcher validation, and keeps the promises the README
makes about it: GPU worker types that scale to zero, the pinned Ray image, roles instead of keys."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
PYPROJECT = CLUSTER_YAML.parent / "pyproject.toml"


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validate(config: dict) -> dict:
    """What `ray up` does before it touches AWS: fill in defaults, then schema-validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


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


def _launch_with_rays_aws_provider(config: dict, node_type: str) -> dict:
    """Launch one node of node_type the way `ray up` does, through Ray's own AWS node provider.

    Ray hands node_config to EC2's RunInstances almost unchecked, so a typo there would only fail
    at `ray up` time. botocore validates every parameter against the EC2 API model before a request
    leaves the machine; the Stubber answers in AWS's place, so this needs no network or credentials.

    Returns:
        The RunInstances parameters that passed botocore's validation.

    Raises:
        botocore.exceptions.ParamValidationError: a parameter EC2 does not take.
    """
    from botocore.stub import ANY, Stubber
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider

    prepared = _validate(config)
    provider = AWSNodeProvider(prepared["provider"], prepared["cluster_name"])
    node_config = prepared["available_node_types"][node_type]["node_config"]
    client = provider.ec2_fail_fast.meta.client
    launched = {"Instances": [{"InstanceId": "i-0123456789abcdef0", "State": {"Code": 0, "Name": "pending"},
                               "StateReason": {"Code": "pending", "Message": "pending"}}]}
    parameters = {key: ANY for key in {*node_config, "MinCount", "MaxCount", "TagSpecifications", "SubnetId"}
                  - {"SubnetIds"}}
    with Stubber(client) as stubber:
        stubber.add_response("run_instances", launched, parameters)
        provider._create_node(node_config, {"ray-node-type": node_type}, count=1)
        stubber.assert_no_pending_responses()
    return parameters


@pytest.mark.parametrize("node_type", ["head", "gpu-score", "gpu-train"])
def test_node_configs_pass_ec2_parameter_validation_in_rays_aws_provider(node_type):
    sent = _launch_with_rays_aws_provider(_load(), node_type)
    assert {"InstanceType", "IamInstanceProfile", "SubnetId"} <= set(sent)


def test_a_typo_in_a_node_config_is_caught():
    from botocore.exceptions import ParamValidationError

    config = _load()
    node_config = config["available_node_types"]["gpu-train"]["node_config"]
    node_config["InstanceTyp"] = node_config.pop("InstanceType")
    with pytest.raises(ParamValidationError, match="InstanceTyp"):
        _launch_with_rays_aws_provider(config, "gpu-train")


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
