//! `--oci` with a compressed `oci-archive` or `docker save` file: read as
//! it is, whatever compressed it.

use super::*;

#[test]
fn compressed_oci_archives_and_docker_save_files_are_read_directly() {
    let images = Images::get();
    let dir = TempDir::new("archives");
    sh(&format!(
        "cd {d}
        skopeo copy -q oci:{layout}:v2 oci-archive:oci.tar:v2
        skopeo copy -q oci:{layout}:v2 docker-archive:docker.tar:test/archive:v2
        gzip -k oci.tar; xz -k oci.tar; zstd -q docker.tar; gzip -k docker.tar
        chmod a+r *",
        d = dir.str(),
        layout = images.layout()
    ));
    let homes = Homes::new("archives");
    for file in ["oci.tar.gz", "oci.tar.xz", "docker.tar.zst", "docker.tar.gz"] {
        let name = unique("archive");
        let out = homes.run(&["-q", "--create", &name, "--oci", path_str(&dir.join(file))]).output();
        out.assert_ok();
        assert_eq!(homes.marker(&name), "v2", "from {file}");
    }
    // A compressed file that is no archive at all is still refused.
    sh(&format!("cd {d}; head -c 100000 /dev/urandom | gzip > noise.gz; chmod a+r noise.gz", d = dir.str()));
    let name = unique("noise");
    let out = homes.run(&["-q", "--create", &name, "--oci", path_str(&dir.join("noise.gz"))]).output();
    assert_refused(&out, &["noise.gz"]);
    homes.assert_absent(&name);
}
