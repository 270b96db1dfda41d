# fish completion for distrorun(1): options, then a distro name from
# `distrorun --list`, then the command and its arguments, completed as
# commands on the host.

function __distrorun_names
    set -l prog (commandline -opc)[1]
    command $prog --list 2>/dev/null | string split -f1 \t
end

# Prints the words after NAME and succeeds once NAME has been given.
function __distrorun_after_name
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l i 1
    while test $i -le (count $tokens)
        switch $tokens[$i]
            case --
                if test $i -lt (count $tokens)
                    printf '%s\n' $tokens[(math $i + 2)..-1]
                    return 0
                end
                return 1
            case --export --export-bin --unexport
                # NAME is the value, and what follows is not a command.
                return 1
            case -d --directory --backend --extra-volume --device --info --create --tarball --oci --tag --image --update --debian --mirror --include --state-dir --keep-xattr --max-size --max-entries --timeout --speed-limit --speed-time --pull --platform --remove
                set i (math $i + 2)
                continue
            case '-*'
            case '*'
                printf '%s\n' $tokens[(math $i + 1)..-1]
                return 0
        end
        set i (math $i + 1)
    end
    return 1
end

function __distrorun_command
    set -l rest (__distrorun_after_name)
    complete -C (string join ' ' -- (string escape -- $rest) (commandline -ct))
end

complete -c distrorun -f
complete -c distrorun -n 'not __distrorun_after_name' -s d -l directory -x -a '(__fish_complete_directories)' -d 'run in DIR inside the distro'
complete -c distrorun -n 'not __distrorun_after_name' -l extra-volume -x -a '(__fish_complete_directories)' -d 'bind-mount a host directory at the same path inside'
complete -c distrorun -n 'not __distrorun_after_name' -l device -x -d 'bring in a device by its CDI name'
complete -c distrorun -n 'not __distrorun_after_name' -l gpu -d 'bring in every GPU this host describes'
complete -c distrorun -n 'not __distrorun_after_name' -l backend -x -a 'auto userns helper' -d 'how to enter the distro'
complete -c distrorun -n 'not __distrorun_after_name' -s v -l verbose -d 'print each step on stderr'
complete -c distrorun -n 'not __distrorun_after_name' -s n -l dry-run -d 'print what would be done, and run nothing'
complete -c distrorun -n 'not __distrorun_after_name' -s l -l list -d 'list the configured distros'
complete -c distrorun -n 'not __distrorun_after_name' -l info -x -a '(__distrorun_names)' -d 'show a distro'
complete -c distrorun -n 'not __distrorun_after_name' -l json -d 'with --list or --info: print JSON'
complete -c distrorun -n 'not __distrorun_after_name' -l doctor -d 'check this machine, and say what to fix'
complete -c distrorun -n 'not __distrorun_after_name' -l create -x -d 'create the per-user distro NAME from --tarball, --oci, --image or --debian'
complete -c distrorun -n 'not __distrorun_after_name' -l tarball -r -F -d 'with --create: a rootfs tarball'
complete -c distrorun -n 'not __distrorun_after_name' -l oci -r -F -d 'with --create: an OCI image layout or archive'
complete -c distrorun -n 'not __distrorun_after_name' -l tag -x -d 'with --oci: the image to take'
complete -c distrorun -n 'not __distrorun_after_name' -l image -x -d 'with --create: an image from a container registry'
complete -c distrorun -n 'not __distrorun_after_name' -l insecure-registry -d "with --image or --update: let the image's registry skip TLS checks"
complete -c distrorun -n 'not __distrorun_after_name' -l pull -x -a 'always missing never' -d 'with --image: when to ask the registry'
complete -c distrorun -n 'not __distrorun_after_name' -l platform -x -a 'linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x linux/riscv64' -d 'with --image: the image for this platform'
complete -c distrorun -n 'not __distrorun_after_name' -l cache -d 'show the blob cache and which distros each blob serves'
complete -c distrorun -n 'not __distrorun_after_name' -l cache-prune -d 'remove the blobs no distro uses from the blob cache'
complete -c distrorun -n 'not __distrorun_after_name' -l all -d 'with --cache-prune: empty the blob cache'
complete -c distrorun -n 'not __distrorun_after_name' -l timeout -x -d 'with --image or --update: the most seconds a manifest or token request may take'
complete -c distrorun -n 'not __distrorun_after_name' -l speed-limit -x -d 'with --image or --update: give a download up below this many bytes a second'
complete -c distrorun -n 'not __distrorun_after_name' -l speed-time -x -d 'with --image or --update: for how many seconds'
complete -c distrorun -n 'not __distrorun_after_name' -l update -x -a '(__distrorun_names)' -d 'pull the image distro NAME was made from again'
complete -c distrorun -n 'not __distrorun_after_name' -l debian -x -a 'stable testing unstable bookworm trixie' -d 'with --create: build a Debian SUITE with mmdebstrap'
complete -c distrorun -n 'not __distrorun_after_name' -l mirror -x -d 'with --debian: the mirror'
complete -c distrorun -n 'not __distrorun_after_name' -l include -x -d 'with --debian: more packages, comma-separated'
complete -c distrorun -n 'not __distrorun_after_name' -l system -d 'with --create, as root: a root-owned system distro'
complete -c distrorun -n 'not __distrorun_after_name' -l state-dir -x -a '(__fish_complete_directories)' -d 'with --system: where the tree goes'
complete -c distrorun -n 'not __distrorun_after_name' -l keep-xattr -x -a 'security.capability security.selinux' -d 'with --system: apply this security.* attribute'
complete -c distrorun -n 'not __distrorun_after_name' -l max-size -x -d 'with --create: the most the source may unpack to'
complete -c distrorun -n 'not __distrorun_after_name' -l max-entries -x -d 'with --create: the most entries the source may hold'
complete -c distrorun -n 'not __distrorun_after_name' -s q -l quiet -d 'with --create: no progress bar and no summary'
complete -c distrorun -n 'not __distrorun_after_name' -l remove -x -a '(__distrorun_names)' -d 'remove the per-user distro NAME'
complete -c distrorun -n 'not __distrorun_after_name' -l yes -d 'with --remove: do not ask for confirmation'
complete -c distrorun -n 'not __distrorun_after_name' -l root -d 'run as root inside a per-user distro'
complete -c distrorun -n 'not __distrorun_after_name' -l export -x -a '(__distrorun_names)' -d 'write a launcher for APP, a desktop file of distro NAME'
complete -c distrorun -n 'not __distrorun_after_name' -l export-bin -x -a '(__distrorun_names)' -d 'write a wrapper for TOOL of distro NAME to ~/.local/bin'
complete -c distrorun -n 'not __distrorun_after_name' -l unexport -x -a '(__distrorun_names)' -d 'remove what --export or --export-bin wrote'
complete -c distrorun -n 'not __distrorun_after_name' -l version -d 'print the version and the compiled-in paths'
complete -c distrorun -n 'not __distrorun_after_name' -l help -d 'print usage'
complete -c distrorun -n 'not __distrorun_after_name' -a '(__distrorun_names)' -d distro
complete -c distrorun -n '__distrorun_after_name' -x -a '(__distrorun_command)'
