# bash completion for distrorun(1): options, then a distro name from
# `distrorun --list`, then the command and its arguments, completed as
# commands on the host (the distro's own commands are not visible here).

_distrorun_names() {
	"${1:-distrorun}" --list 2>/dev/null | cut -f1
}

_distrorun() {
	local cur prev prog i w name_at=0
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=
	[ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
	prog=${COMP_WORDS[0]}
	# Where NAME is: the first word that is neither an option nor the value
	# of one; after `--`, the word that follows.
	i=1
	while [ "$i" -lt "$COMP_CWORD" ]; do
		w=${COMP_WORDS[i]}
		case $w in
		--)
			name_at=$((i + 1))
			break
			;;
		--export | --export-bin | --unexport)
			# NAME is the value; what follows is a program of the distro,
			# which the host cannot list.
			[ $((i + 1)) -lt "$COMP_CWORD" ] && return 0
			mapfile -t COMPREPLY < <(compgen -W "$(_distrorun_names "$prog")" -- "$cur")
			return 0
			;;
		-d | --directory | --backend | --extra-volume | --device | --info | --create | --tarball | --oci | --tag | --image | --update | --debian | --mirror | --include | --state-dir | --keep-xattr | --max-size | --max-entries | --timeout | --speed-limit | --speed-time | --pull | --platform | --remove)
			i=$((i + 2))
			continue
			;;
		-*) ;;
		*)
			name_at=$i
			break
			;;
		esac
		i=$((i + 1))
	done
	if [ "$name_at" -gt 0 ] && [ "$COMP_CWORD" -gt "$name_at" ]; then
		# The command: as if it were typed on its own.
		if declare -F _command_offset >/dev/null; then
			_command_offset $((name_at + 1))
		elif [ "$COMP_CWORD" -eq $((name_at + 1)) ]; then
			mapfile -t COMPREPLY < <(compgen -c -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		return 0
	fi
	if [ "$name_at" -eq 0 ]; then
		case $prev in
		-d | --directory | --extra-volume | --state-dir)
			mapfile -t COMPREPLY < <(compgen -d -- "$cur")
			return 0
			;;
		--backend)
			mapfile -t COMPREPLY < <(compgen -W "auto userns helper" -- "$cur")
			return 0
			;;
		--info | --remove | --update)
			mapfile -t COMPREPLY < <(compgen -W "$(_distrorun_names "$prog")" -- "$cur")
			return 0
			;;
		--tarball | --oci)
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			return 0
			;;
		--keep-xattr)
			mapfile -t COMPREPLY < <(compgen -W "security.capability security.selinux" -- "$cur")
			return 0
			;;
		--pull)
			mapfile -t COMPREPLY < <(compgen -W "always missing never" -- "$cur")
			return 0
			;;
		--platform)
			mapfile -t COMPREPLY < <(compgen -W "linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x linux/riscv64" -- "$cur")
			return 0
			;;
		--create | --tag | --image | --debian | --mirror | --include | --max-size | --max-entries | --timeout | --speed-limit | --speed-time)
			# A new name, a number, or what only the image or the mirror knows.
			return 0
			;;
		esac
		case $cur in
		-*)
			mapfile -t COMPREPLY < <(compgen -W "-d --directory --extra-volume --device --gpu --backend -v --verbose -n --dry-run -l --list --info --json --doctor --create --tarball --oci --tag --image --pull --platform --insecure-registry --timeout --speed-limit --speed-time --update --debian --mirror --include --system --state-dir --keep-xattr --max-size --max-entries -q --quiet --remove --yes --cache --cache-prune --all --root --export --export-bin --unexport --version --help --" -- "$cur")
			return 0
			;;
		esac
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(_distrorun_names "$prog")" -- "$cur")
	return 0
}

complete -F _distrorun distrorun
