#!/usr/bin/env bash
# Two ssh "hosts" on this one machine for DeepSpeed's hostfile launcher (pdsh over ssh), as root: an sshd
# of the tests' own on a port of its own, a key pair made here, and an ssh_config naming both.
#   tests/ssh/hosts.sh up DIR     install openssh-server and pdsh when missing (apt-get), start the sshd
#                                 with its state in DIR; prints DIR/ssh_config (its Port, key and host
#                                 checks); `localhost` and `127.0.0.1` are the two hosts
#   tests/ssh/hosts.sh down DIR   stop it
# Exit 3 when the packages cannot be installed (not root, no apt-get): the tests skip, naming why.
set -euo pipefail
cmd=${1:?up|down}
dir=${2:?state dir}

if [[ $cmd == down ]]; then
    [[ -f $dir/sshd.pid ]] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    exit 0
fi

if ! command -v pdsh >/dev/null || [[ ! -x /usr/sbin/sshd ]] || ! command -v ssh >/dev/null; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "sshd and pdsh are not installed and cannot be installed here (needs root and apt-get)" >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends openssh-server openssh-client pdsh >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        apt-get install -y --no-install-recommends openssh-server openssh-client pdsh >/dev/null; }; } ||
        { echo "apt-get could not install openssh-server openssh-client pdsh" >&2; exit 3; }
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "an sshd of the tests' own needs root here" >&2
    exit 3
fi

mkdir -p "$dir" /run/sshd
chmod 700 "$dir"
[[ -f $dir/host_key ]] || ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
[[ -f $dir/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N "" -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
port=$(( 20000 + RANDOM % 20000 ))
cat > "$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv none
EOF
cat > "$dir/ssh_config" <<EOF
Host localhost 127.0.0.1
    Port $port
    IdentityFile $dir/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 10
EOF
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
for _ in $(seq 1 40); do
    if ssh -F "$dir/ssh_config" 127.0.0.1 true 2>/dev/null; then
        echo "$dir/ssh_config"
        exit 0
    fi
    sleep 0.25
done
echo "the sshd did not accept a login within 10 s; its log: $dir/sshd.log" >&2
exit 1
