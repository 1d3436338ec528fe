"""The EC2 provider: workers on instances of their own, started with boto3.

``up`` does, in order, what a careful operator would do by hand:

1. checks the credentials (STS) and resolves the AMI (default: the latest
   Debian 12 image, through the SSM public parameter);
2. stores the database URL as an SSM SecureString (``/shoal/<crawl>/db-url``):
   it never appears in user-data, tags, logs or ``fleet status``;
3. builds a wheel of this very shoal and uploads it to the crawl's S3 prefix
   (or installs ``shoal==VERSION`` from the package index when it cannot);
4. creates (once) a role and instance profile with least privilege: the
   crawl's S3 prefix, that one SSM parameter;
5. finds the default VPC's subnet and a security group with no inbound rule
   (or uses the ones given);
6. launches the instances: IMDSv2 only, ``InstanceInitiatedShutdownBehavior =
   terminate``, tags ``shoal:crawl``, spot or on-demand, and the user-data of
   ``bootstrap.sh`` that installs shoal and a systemd unit ``shoal-worker``.

Everything a user can get wrong (no credentials, no default VPC, a quota)
ends in a :class:`~shoal.errors.FleetError` naming the fix. The endpoint can be
pointed elsewhere (``AWS_ENDPOINT_URL``, or ``endpoint_url``): the tests run
these same calls against moto's server on loopback.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from shoal import __version__
from shoal.errors import FleetError
from shoal.fleet.base import Instance

__all__ = [
    "DEBIAN_AMI_PARAMETER",
    "Ec2Options",
    "Ec2Provider",
    "db_parameter_name",
    "render_user_data",
    "resolve_db_url",
]

DEBIAN_AMI_PARAMETER = "/aws/service/debian/release/12/latest/{arch}"
TAG = "shoal:crawl"
EXTRAS = "aws,browser,parse,notify"


def db_parameter_name(crawl: str) -> str:
    """The SSM parameter that holds a crawl's database URL."""
    return f"/shoal/{crawl}/db-url"


@dataclass(slots=True)
class Ec2Options:
    """``[fleet.ec2]`` of the spec, or the flags of ``fleet up``."""

    region: str | None = None
    instance_type: str = "t3.small"
    ami: str | None = None
    arch: str = "amd64"
    subnet_id: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    key_name: str | None = None
    spot: bool = False
    bucket: str | None = None
    """Where the wheel goes (default: the bucket of the crawl's ``s3://`` archive)."""
    prefix: str = ""
    endpoint_url: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


def _client_error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


_QUOTA_CODES = {
    "InstanceLimitExceeded": "the account's instance quota is reached: ask for more in Service Quotas, or use a smaller --count",
    "VcpuLimitExceeded": "the account's vCPU quota is reached: ask for more in Service Quotas (Running On-Demand instances), or use a smaller --count or --instance-type",
    "MaxSpotInstanceCountExceeded": "the spot instance quota is reached: use on-demand (no --spot) or a smaller --count",
    "InsufficientInstanceCapacity": "AWS has no capacity for this instance type here now: try another --instance-type or --subnet in another zone",
    "UnauthorizedOperation": "these credentials may not launch instances: attach the IAM policy given in the README's 'Run a fleet on AWS'",
    "InvalidAMIID.NotFound": "the AMI does not exist in this region: pass --ami with an image of this region",
    "InvalidAMIID.Malformed": "the --ami value is not an AMI id (ami-...)",
}


class Ec2Provider:
    """Workers on EC2 instances tagged ``shoal:crawl = <crawl>``."""

    name = "ec2"

    def __init__(self, crawl: str, options: Ec2Options, *, session: Any = None) -> None:
        try:
            import boto3
        except ImportError:
            raise FleetError("the ec2 provider needs boto3: pip install 'shoal[aws]'") from None
        self.crawl = crawl
        self.opt = options
        self.session = session or boto3.session.Session(region_name=options.region)
        if self.session.region_name is None:
            raise FleetError(
                "no AWS region: pass --region, set region in [fleet.ec2], or set AWS_DEFAULT_REGION"
            )
        self.region: str = self.session.region_name

    def _client(self, service: str) -> Any:
        kw: dict[str, Any] = {}
        if self.opt.endpoint_url:
            kw["endpoint_url"] = self.opt.endpoint_url
        return self.session.client(service, **kw)

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        """One AWS call; every error a user can fix becomes one FleetError line."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )

        try:
            return fn(**kw)
        except NoCredentialsError:
            raise FleetError(
                "no AWS credentials: run `aws configure`, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or use an instance role"
            ) from None
        except NoRegionError:
            raise FleetError("no AWS region: pass --region or set AWS_DEFAULT_REGION") from None
        except EndpointConnectionError as exc:
            raise FleetError(
                f"cannot reach AWS ({exc}): check the network or --endpoint-url"
            ) from None
        except ClientError as exc:
            code = _client_error_code(exc)
            hint = _QUOTA_CODES.get(code)
            msg = str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))
            raise FleetError(
                f"{what} failed: {code}: {msg}" + (f"; {hint}" if hint else "")
            ) from None

    # -- pieces of `up` -------------------------------------------------------------------------
    def check_credentials(self) -> str:
        """The caller's account id (STS); a clear error when there are no credentials."""
        sts = self._client("sts")
        ident = self._call("checking the AWS credentials", sts.get_caller_identity)
        return str(ident.get("Account", ""))

    def resolve_ami(self) -> str:
        """The AMI given, or the latest Debian 12 image of this region (SSM public parameter)."""
        if self.opt.ami:
            return self.opt.ami
        name = DEBIAN_AMI_PARAMETER.format(arch=self.opt.arch)
        ssm = self._client("ssm")
        try:
            got = self._call(f"reading the SSM parameter {name}", ssm.get_parameter, Name=name)
        except FleetError as exc:
            raise FleetError(
                f"{exc}; pass --ami with a Debian 12 image id of region {self.region}"
            ) from None
        return str(got["Parameter"]["Value"])

    def store_db_url(self, db_url: str) -> str:
        """Put the database URL in SSM as a SecureString; returns the parameter name."""
        ssm = self._client("ssm")
        name = db_parameter_name(self.crawl)
        self._call(
            "storing the database URL in SSM",
            ssm.put_parameter,
            Name=name,
            Value=db_url,
            Type="SecureString",
            Overwrite=True,
            Description=f"shoal crawl {self.crawl}: frontier database URL",
        )
        return name

    def bucket_and_prefix(self) -> tuple[str, str]:
        """Where the wheel goes: the bucket given, else a clear error."""
        if not self.opt.bucket:
            raise FleetError(
                "the ec2 provider needs an S3 bucket for the shoal wheel: set "
                '[storage] archive = "s3://bucket/prefix" in the spec, or pass --bucket'
            )
        prefix = self.opt.prefix.strip("/")
        return self.opt.bucket, f"{prefix}/{self.crawl}".strip("/")

    def upload_wheel(self, wheel: Path) -> str:
        """Upload the wheel to the crawl's prefix; returns a pre-signed GET valid for 7 days."""
        bucket, prefix = self.bucket_and_prefix()
        s3 = self._client("s3")
        key = f"{prefix}/wheels/{wheel.name}"
        try:
            self._call("checking the S3 bucket", s3.head_bucket, Bucket=bucket)
        except FleetError as exc:
            raise FleetError(
                f"{exc}; create the bucket (`aws s3 mb s3://{bucket} --region {self.region}`) "
                "or check that it is in this region"
            ) from None
        self._call(
            "uploading the shoal wheel",
            s3.upload_file,
            Filename=str(wheel),
            Bucket=bucket,
            Key=key,
        )
        return str(
            s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7 * 24 * 3600
            )
        )

    def ensure_instance_profile(self, parameter: str) -> str:
        """A role + instance profile allowed only the crawl's S3 prefix and its SSM parameter."""
        iam = self._client("iam")
        name = f"shoal-worker-{self.crawl}"[:64]
        bucket, prefix = self.bucket_and_prefix()
        account = self.check_credentials()
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        policy = least_privilege_policy(bucket, prefix, self.region, account, parameter)
        from botocore.exceptions import ClientError

        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        except ClientError as exc:
            if _client_error_code(exc) != "EntityAlreadyExists":
                self._call("creating the worker role", _raise, exc=exc)
        self._call(
            "attaching the worker policy",
            iam.put_role_policy,
            RoleName=name,
            PolicyName="shoal-worker",
            PolicyDocument=json.dumps(policy),
        )
        try:
            iam.create_instance_profile(InstanceProfileName=name)
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        except ClientError as exc:
            if _client_error_code(exc) != "EntityAlreadyExists":
                self._call("creating the instance profile", _raise, exc=exc)
        return name

    def network(self) -> tuple[str | None, list[str]]:
        """The subnet and security groups: given, or the default VPC's with a no-inbound group."""
        ec2 = self._client("ec2")
        subnet = self.opt.subnet_id
        groups = list(self.opt.security_group_ids)
        if subnet and groups:
            return subnet, groups
        if subnet:
            got = self._call("reading the subnet", ec2.describe_subnets, SubnetIds=[subnet])
            vpc_id = got["Subnets"][0]["VpcId"]
        else:
            vpcs = self._call(
                "finding the default VPC",
                ec2.describe_vpcs,
                Filters=[{"Name": "isDefault", "Values": ["true"]}],
            )["Vpcs"]
            if not vpcs:
                raise FleetError(
                    f"region {self.region} has no default VPC: pass --subnet SUBNET_ID and "
                    "--security-group SG_ID (no inbound rule is needed)"
                )
            vpc_id = vpcs[0]["VpcId"]
        if not groups:
            name = f"shoal-worker-{self.crawl}"
            found = self._call(
                "finding the worker security group",
                ec2.describe_security_groups,
                Filters=[
                    {"Name": "group-name", "Values": [name]},
                    {"Name": "vpc-id", "Values": [vpc_id]},
                ],
            )["SecurityGroups"]
            if found:
                groups = [found[0]["GroupId"]]
            else:
                made = self._call(
                    "creating the worker security group",
                    ec2.create_security_group,
                    GroupName=name,
                    Description="shoal workers: no inbound rule, outbound only",
                    VpcId=vpc_id,
                )
                groups = [made["GroupId"]]
        return subnet, groups

    def launch(
        self,
        count: int,
        ami: str,
        profile: str,
        user_data: str,
        subnet: str | None,
        groups: list[str],
    ) -> list[Instance]:
        """RunInstances with IMDSv2 only, terminate-on-shutdown, tags, the instance profile."""
        ec2 = self._client("ec2")
        tags = [
            {"Key": TAG, "Value": self.crawl},
            {"Key": "Name", "Value": f"shoal-worker-{self.crawl}"},
            *({"Key": k, "Value": v} for k, v in self.opt.extra_tags.items()),
        ]
        kw: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": self.opt.instance_type,
            "MinCount": count,
            "MaxCount": count,
            "UserData": user_data,
            "IamInstanceProfile": {"Name": profile},
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
            },
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            "SecurityGroupIds": groups,
        }
        if subnet:
            kw["SubnetId"] = subnet
        if self.opt.key_name:
            kw["KeyName"] = self.opt.key_name
        if self.opt.spot:
            kw["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        # A new instance profile takes a few seconds to be usable by EC2.
        for attempt in range(6):
            try:
                got = self._call("launching instances", ec2.run_instances, **kw)
                break
            except FleetError as exc:
                if "instance profile" in str(exc).lower() and attempt < 5:
                    time.sleep(2 * (attempt + 1))
                    continue
                raise
        return [_instance(i) for i in got["Instances"]]

    # -- the provider ---------------------------------------------------------------------------
    def up(self, count: int, *, db_url: str = "", wheel: Path | None = None) -> list[Instance]:
        """Launch ``count`` workers for the crawl (see the module docstring for the steps)."""
        if not db_url:
            raise FleetError("fleet up needs the database URL (--db)")
        self.check_credentials()
        ami = self.resolve_ami()
        parameter = self.store_db_url(db_url)
        profile = self.ensure_instance_profile(parameter)
        wheel_url = self.upload_wheel(wheel) if wheel is not None else ""
        user_data = render_user_data(
            crawl=self.crawl,
            region=self.region,
            parameter=parameter,
            wheel_url=wheel_url,
            endpoint_url=self.opt.endpoint_url,
        )
        subnet, groups = self.network()
        return self.launch(count, ami, profile, user_data, subnet, groups)

    def instances(self) -> list[Instance]:
        """Every instance tagged with this crawl (terminated ones while AWS still lists them)."""
        ec2 = self._client("ec2")
        out: list[Instance] = []
        pages = self._call(
            "listing instances",
            ec2.get_paginator("describe_instances").paginate,
            Filters=[{"Name": f"tag:{TAG}", "Values": [self.crawl]}],
        )
        try:
            for page in pages:
                for res in page["Reservations"]:
                    out.extend(_instance(i) for i in res["Instances"])
        except Exception as exc:  # errors surface while paging
            self._call("listing instances", _raise, exc=exc)
        return out

    def down(self, timeout: float = 600.0) -> list[Instance]:
        """Terminate every instance of the crawl, wait until they are gone, delete the SSM parameter."""
        ec2 = self._client("ec2")
        ids = [i.id for i in self.instances() if i.state not in ("terminated", "shutting-down")]
        if ids:
            self._call("terminating instances", ec2.terminate_instances, InstanceIds=ids)
            waiter = ec2.get_waiter("instance_terminated")
            self._call(
                "waiting for the instances to end",
                waiter.wait,
                InstanceIds=ids,
                WaiterConfig={"Delay": 5, "MaxAttempts": max(1, int(timeout // 5))},
            )
        ssm = self._client("ssm")
        from botocore.exceptions import ClientError

        try:
            ssm.delete_parameter(Name=db_parameter_name(self.crawl))
        except ClientError as exc:
            if _client_error_code(exc) != "ParameterNotFound":
                self._call("deleting the SSM parameter", _raise, exc=exc)
        return [i for i in self.instances() if i.id in ids]

    def logs(self, instance_id: str | None, lines: int) -> dict[str, str]:
        """The tail of each instance's console output (cloud-init and the bootstrap's lines)."""
        ec2 = self._client("ec2")
        out: dict[str, str] = {}
        for inst in self.instances():
            if instance_id in (None, inst.id):
                got = self._call(
                    "reading the console output", ec2.get_console_output, InstanceId=inst.id
                )
                text = str(got.get("Output") or "")
                out[inst.id] = "\n".join(text.splitlines()[-lines:])
        return out


def _raise(exc: Exception) -> None:
    raise exc


def _instance(raw: dict[str, Any]) -> Instance:
    launched: Any = raw.get("LaunchTime")
    return Instance(
        id=str(raw["InstanceId"]),
        state=str(raw.get("State", {}).get("Name", "unknown")),
        provider="ec2",
        private_ip=raw.get("PrivateIpAddress"),
        public_ip=raw.get("PublicIpAddress"),
        type=raw.get("InstanceType"),
        launched_at=float(launched.timestamp()) if launched is not None else None,
    )


def least_privilege_policy(
    bucket: str, prefix: str, region: str, account: str, parameter: str
) -> dict[str, Any]:
    """The worker role's policy: the crawl's S3 prefix and the one SSM parameter, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ArchiveObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
            {
                "Sid": "ArchiveListing",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            },
            {
                "Sid": "DatabaseUrl",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:aws:ssm:{region}:{account}:parameter{parameter}",
            },
        ],
    }


def render_user_data(
    *, crawl: str, region: str, parameter: str, wheel_url: str, endpoint_url: str | None
) -> str:
    """The instance's user-data: shell variables (no secret among them) + ``bootstrap.sh``."""
    body = resources.files("shoal.fleet").joinpath("bootstrap.sh").read_text("utf-8")
    values = {
        "SHOAL_CRAWL": crawl,
        "SHOAL_REGION": region,
        "SHOAL_DB": f"ssm:{parameter}",
        "SHOAL_WHEEL_URL": wheel_url,
        "SHOAL_PACKAGE": f"shoal=={__version__}",
        "SHOAL_EXTRAS": EXTRAS,
        "SHOAL_ENDPOINT": endpoint_url or "",
    }
    head = "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
    return "#!/bin/bash\n# shoal worker user-data (written by `shoal fleet up`)\n" + head + body


def build_wheel(out_dir: Path) -> Path | None:
    """A wheel of the installed shoal when its source tree is here (an editable install), else None."""
    import shoal

    src = Path(shoal.__file__).resolve().parents[2]
    if not (src / "pyproject.toml").is_file():
        return None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(out_dir),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FleetError(f"building the shoal wheel failed: {proc.stderr.strip()[-500:]}")
    wheels = sorted(out_dir.glob("shoal-*.whl"))
    return wheels[-1] if wheels else None


def resolve_db_url(
    value: str, *, region: str | None = None, endpoint_url: str | None = None
) -> str:
    """``ssm:/name`` → the SecureString's value (read with the machine's role); anything else as is."""
    if not value.startswith("ssm:"):
        return value
    name = value[4:]
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise FleetError(f"--db {value} needs boto3: pip install 'shoal[aws]'") from None
    kw: dict[str, Any] = {}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    try:
        client = boto3.session.Session(region_name=region).client("ssm", **kw)
        got = client.get_parameter(Name=name, WithDecryption=True)
    except (BotoCoreError, ClientError) as exc:
        raise FleetError(
            f"cannot read the database URL from SSM parameter {name}: {exc}; "
            "check the instance role (ssm:GetParameter) and the region"
        ) from None
    return str(got["Parameter"]["Value"])
