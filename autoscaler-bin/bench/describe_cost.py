#!/usr/bin/env python3
"""What one DescribeAutoScalingGroups costs moto at burst scale, for all groups (the
round's scan) and for one group (actuation's read before SetDesiredCapacity, which the
round no longer makes while its scan is young).

    python3 autoscaler-bin/bench/describe_cost.py [GROUPS=10] [INSTANCES_PER_GROUP=500] [REPEATS=5]

Starts its own moto_server on a free port and stops it; fails loudly without moto.
"""
import socket, subprocess, sys, time

import boto3

groups, per_group, repeats = (int(a) for a in (sys.argv[1:] + ["10", "500", "5"][len(sys.argv) - 1:])[:3])
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit(f"moto_server did not answer on port {port}")
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    ec2, asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/17",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    lt = ec2.create_launch_template(LaunchTemplateName="bench-lt", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "m5.large"})["LaunchTemplate"]["LaunchTemplateId"]
    for g in range(groups):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"g{g}", MinSize=0, MaxSize=per_group * 2,
            DesiredCapacity=per_group, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"})

    def timed(**args):
        best, total = None, 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            out = asg.describe_auto_scaling_groups(MaxRecords=100, **args)
            dt = time.perf_counter() - t
            total += dt
            best = dt if best is None else min(best, dt)
        n = sum(len(g["Instances"]) for g in out["AutoScalingGroups"])
        return n, total / repeats, best

    for label, args in [("all groups (the scan)", {}),
                        ("one group (actuation's read)", {"AutoScalingGroupNames": ["g0"]})]:
        n, mean, best = timed(**args)
        print(f"{label}: {n} instances, mean {mean:.3f} s, best {best:.3f} s over {repeats}")
finally:
    moto.terminate()
    moto.wait()
