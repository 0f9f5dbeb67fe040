# Sourced by bench/ab.sh and bench/profile_ncu.sh: parses one setup word, "name" or
# "name:part,part,…", where a part is a bench flag ("--phases"), a setting ("train.gate=burn": its
# key has a dot), another binary ("bin=PATH") or an environment variable ("X=1").
# Usage: parse_word WORD DEFAULT_BIN; sets $name, $bin, and the arrays args and envs.
parse_word() {
  local word=$1 x parts=()
  name=${word%%:*}
  bin=$2
  args=()
  envs=()
  [ "$name" != "$word" ] && IFS=, read -ra parts <<<"${word#*:}"
  for x in ${parts[@]+"${parts[@]}"}; do
    if [[ $x == --* ]]; then
      args+=("$x")
    elif [[ $x == bin=* ]]; then
      bin=${x#bin=}
    elif [[ ${x%%=*} == *.* ]]; then
      args+=(--set "$x")
    else
      envs+=("$x")
    fi
  done
}
