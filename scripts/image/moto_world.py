#!/usr/bin/env python3
"""The AWS side of the image test (scripts/image/test.sh), in a moto server.

usage: moto_world.py setup ENDPOINT CLUSTER   -> prints "QUEUE_URL INSTANCE_ID"
       moto_world.py desired ENDPOINT GROUP   -> prints the group's desired capacity

`setup` makes two spot AutoScalingGroups of m5.large carrying cluster-autoscaler's
auto-discovery tags for CLUSTER, one per zone so that they form a zone-balance set:
image-test-a in us-east-1a with one instance (the test registers it as a KWOK Node, idle:
a scale-down candidate) and image-test-b in us-east-1b with none; and an SQS queue for
--event-queue-url. It prints the queue URL and the id of image-test-a's instance.
"""
import sys

import boto3

GROUPS = {"image-test-a": ("us-east-1a", 1), "image-test-b": ("us-east-1b", 0)}


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def setup(endpoint, cluster):
    ec2 = client("ec2", endpoint)
    asg = client("autoscaling", endpoint)
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    lt = ec2.create_launch_template(
        LaunchTemplateName="lt-image-test",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large",
                            "InstanceMarketOptions": {"MarketType": "spot"}},
    )["LaunchTemplate"]["LaunchTemplateId"]
    for group, (zone, desired) in GROUPS.items():
        tags = [{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                 "PropagateAtLaunch": True}
                for k, v in [("k8s.io/cluster-autoscaler/enabled", "true"),
                             (f"k8s.io/cluster-autoscaler/{cluster}", "owned")]]
        asg.create_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=0, MaxSize=3, DesiredCapacity=desired,
            VPCZoneIdentifier=subnets[zone],
            LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"}, Tags=tags)
    instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["image-test-a"])[
        "AutoScalingGroups"][0]["Instances"]
    if len(instances) != 1:
        sys.exit(f"moto_world.py: image-test-a has {len(instances)} instances, want 1")
    queue = client("sqs", endpoint).create_queue(QueueName="autoscaler-events")["QueueUrl"]
    print(queue, instances[0]["InstanceId"])


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
