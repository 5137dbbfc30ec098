#!/usr/bin/env python3
"""The AWS side of the image test (scripts/image/test.sh), in a moto server.

usage: moto_world.py setup ENDPOINT CLUSTER   -> prints the event queue URL
       moto_world.py desired ENDPOINT GROUP   -> prints the group's desired capacity

`setup` makes one spot AutoScalingGroup (min 0, max 3, desired 0, us-east-1a, m5.large)
carrying cluster-autoscaler's auto-discovery tags for CLUSTER, and an SQS queue for
--event-queue-url: what the binary in the image needs to go round with the AWS provider.
"""
import sys

import boto3

GROUP = "image-test-spot"


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def setup(endpoint, cluster):
    ec2 = client("ec2", endpoint)
    subnet = next(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]
                  if s["AvailabilityZone"] == "us-east-1a")
    lt = ec2.create_launch_template(
        LaunchTemplateName=f"lt-{GROUP}",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large",
                            "InstanceMarketOptions": {"MarketType": "spot"}},
    )["LaunchTemplate"]["LaunchTemplateId"]
    tags = [{"ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
             "PropagateAtLaunch": True}
            for k, v in [("k8s.io/cluster-autoscaler/enabled", "true"),
                         (f"k8s.io/cluster-autoscaler/{cluster}", "owned")]]
    client("autoscaling", endpoint).create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=3, DesiredCapacity=0,
        VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"}, Tags=tags)
    print(client("sqs", endpoint).create_queue(QueueName="autoscaler-events")["QueueUrl"])


def desired(endpoint, group):
    groups = client("autoscaling", endpoint).describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"]
    if not groups:
        sys.exit(f"moto_world.py: no group {group} in moto at {endpoint}")
    print(groups[0]["DesiredCapacity"])


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("setup", "desired"):
        sys.exit(__doc__)
    {"setup": setup, "desired": desired}[sys.argv[1]](sys.argv[2], sys.argv[3])
