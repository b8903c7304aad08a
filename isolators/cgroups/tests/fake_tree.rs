//! The layer against fake cgroupfs trees in temporary directories: plain
//! directories and files standing in for the kernel's.

use std::fs;
use std::path::Path;

use berth_cgroups::fake::mountinfo_line;
use berth_cgroups::{CgroupError, CgroupMode, CgroupRoot, Controller, Hierarchies};

/// A v1 tree with cpu and cpuacct either separate or co-mounted, memory, and
/// the agent in memory cgroup `/agent`.
fn v1_tree(dir: &Path, comounted: bool) -> Hierarchies {
    let mut mountinfo = String::new();
    let mut cgroup = String::new();
    if comounted {
        fs::create_dir_all(dir.join("cpu,cpuacct")).unwrap();
        mountinfo += &mountinfo_line(32, &dir.join("cpu,cpuacct"), "cgroup", "rw,cpu,cpuacct");
        cgroup += "3:cpu,cpuacct:/\n";
    } else {
        fs::create_dir_all(dir.join("cpu")).unwrap();
        fs::create_dir_all(dir.join("cpuacct")).unwrap();
        mountinfo += &mountinfo_line(32, &dir.join("cpu"), "cgroup", "rw,cpu");
        mountinfo += &mountinfo_line(33, &dir.join("cpuacct"), "cgroup", "rw,cpuacct");
        cgroup += "3:cpu:/\n2:cpuacct:/\n";
    }
    fs::create_dir_all(dir.join("memory/agent")).unwrap();
    fs::create_dir_all(dir.join("unified")).unwrap();
    mountinfo += &mountinfo_line(35, &dir.join("memory"), "cgroup", "rw,memory");
    mountinfo += &mountinfo_line(40, &dir.join("systemd"), "cgroup", "rw,xattr,name=systemd");
    mountinfo += &mountinfo_line(41, &dir.join("unified"), "cgroup2", "rw,nsdelegate");
    cgroup += "4:memory:/agent\n1:name=systemd:/\n0::/\n";
    Hierarchies::from_texts(&mountinfo, &cgroup).unwrap()
}

/// A v2 tree with the agent in `/agent.service`, offered `offered`.
fn v2_tree(dir: &Path, offered: &str) -> Hierarchies {
    let own = dir.join("agent.service");
    fs::create_dir_all(&own).unwrap();
    fs::write(
        dir.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids",
    )
    .unwrap();
    fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
    fs::write(own.join("cgroup.controllers"), offered).unwrap();
    fs::write(own.join("cgroup.subtree_control"), "").unwrap();
    let mountinfo = mountinfo_line(30, dir, "cgroup2", "rw,nsdelegate,memory_recursiveprot");
    Hierarchies::from_texts(&mountinfo, "0::/agent.service\n").unwrap()
}

/// What the kernel does on mkdir in v2: the new cgroup has its files.
fn fake_v2_cgroup(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
}

#[test]
fn v1_separate_hierarchies_relative_root() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v1_tree(tmp.path(), false);
    assert_eq!(h.mode(), CgroupMode::V1);
    let root = CgroupRoot::new(h, "berth-test").unwrap();
    assert!(root.is_relative());
    root.ensure(&[Controller::Cpu, Controller::Cpuacct, Controller::Memory])
        .unwrap();
    assert!(tmp.path().join("cpu/berth-test").is_dir());
    assert!(tmp.path().join("cpuacct/berth-test").is_dir());
    assert!(tmp.path().join("memory/agent/berth-test").is_dir());
    assert_eq!(root.oci_cgroups_path("c1"), "berth-test/c1");

    let cg = root.container("c1").unwrap();
    for c in [Controller::Cpu, Controller::Cpuacct, Controller::Memory] {
        cg.create(c).unwrap();
        assert!(cg.exists(c));
    }
    assert_eq!(
        cg.path(Controller::Memory).unwrap(),
        tmp.path().join("memory/agent/berth-test/c1")
    );
    assert_eq!(
        cg.paths(&[Controller::Cpu, Controller::Cpuacct])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        root.children(Controller::Cpu).unwrap(),
        vec!["c1".to_string()]
    );

    // Writing a file the "kernel" did not create names the file and value.
    let err = cg.write(Controller::Cpu, "cpu.shares", "512").unwrap_err();
    assert!(matches!(err, CgroupError::Write { .. }));
    assert!(
        err.to_string().contains("c1/cpu.shares") && err.to_string().contains("\"512\""),
        "{err}"
    );

    let procs = cg.file_path(Controller::Memory, "cgroup.procs").unwrap();
    fs::write(&procs, "").unwrap();
    cg.add_process(Controller::Memory, 4242).unwrap();
    assert_eq!(fs::read_to_string(&procs).unwrap(), "4242");
    fs::write(&procs, "1\n22\n333\n").unwrap();
    assert_eq!(cg.pids(Controller::Memory).unwrap(), vec![1, 22, 333]);
    fs::write(&procs, "1\nx\n").unwrap();
    assert!(matches!(
        cg.pids(Controller::Memory),
        Err(CgroupError::Parse { .. })
    ));
    fs::remove_file(&procs).unwrap();

    fs::write(
        cg.file_path(Controller::Cpu, "cpu.stat").unwrap(),
        "nr_periods 3\nthrottled_time 9\n",
    )
    .unwrap();
    assert_eq!(
        cg.read_keyed(Controller::Cpu, "cpu.stat").unwrap()["throttled_time"],
        9
    );
    fs::remove_file(cg.file_path(Controller::Cpu, "cpu.stat").unwrap()).unwrap();

    assert!(matches!(
        cg.path(Controller::Blkio),
        Err(CgroupError::NotMounted {
            controller: Controller::Blkio
        })
    ));
    cg.remove_all(&[Controller::Cpu, Controller::Cpuacct, Controller::Memory])
        .unwrap();
    assert!(!cg.exists(Controller::Cpu) && !cg.exists(Controller::Memory));
    // Removing again (an unknown container) is fine.
    cg.remove(Controller::Memory).unwrap();

    root.remove().unwrap();
    assert!(!tmp.path().join("memory/agent/berth-test").exists());
    assert!(
        tmp.path().join("memory/agent").is_dir(),
        "the agent's own cgroup stays"
    );
}

#[test]
fn v1_comounted_controllers_share_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CgroupRoot::new(v1_tree(tmp.path(), true), "/berth").unwrap();
    assert_eq!(
        root.dir(Controller::Cpu).unwrap(),
        root.dir(Controller::Cpuacct).unwrap()
    );
    root.ensure(&[Controller::Cpu, Controller::Cpuacct])
        .unwrap();
    assert!(tmp.path().join("cpu,cpuacct/berth").is_dir());
    // Absolute: below the hierarchy root, not the agent's own memory cgroup.
    assert_eq!(
        root.dir(Controller::Memory).unwrap(),
        tmp.path().join("memory/berth")
    );

    let cg = root.container("c1").unwrap();
    cg.create(Controller::Cpu).unwrap();
    cg.create(Controller::Cpuacct).unwrap(); // same directory: fine
    let paths = cg.paths(&[Controller::Cpu, Controller::Cpuacct]).unwrap();
    assert_eq!(
        paths,
        vec![tmp.path().join("cpu,cpuacct/berth/c1").as_path()]
    );
    cg.remove_all(&[Controller::Cpu, Controller::Cpuacct])
        .unwrap();
    assert!(!cg.exists(Controller::Cpuacct));
    root.remove().unwrap();
    assert!(!tmp.path().join("cpu,cpuacct/berth").exists());
}

#[test]
fn multi_component_root_is_created_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CgroupRoot::new(v1_tree(tmp.path(), false), "/a/b").unwrap();
    root.ensure(&[Controller::Memory]).unwrap();
    assert!(tmp.path().join("memory/a/b").is_dir());
    root.container("x")
        .unwrap()
        .create(Controller::Memory)
        .unwrap();
    root.remove().unwrap();
    assert!(!tmp.path().join("memory/a").exists());
    assert!(tmp.path().join("memory").is_dir());
}

#[test]
fn v2_maps_all_controllers_to_one_directory_and_enables_them() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v2_tree(tmp.path(), "cpuset cpu io memory pids");
    assert_eq!(h.mode(), CgroupMode::V2);
    let root = CgroupRoot::new(h, "berth").unwrap();
    let own = tmp.path().join("agent.service");
    fake_v2_cgroup(&own.join("berth"));
    root.ensure(&[
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Freezer,
    ])
    .unwrap();
    // From the delegation point (the agent's own cgroup) down to the root.
    assert_eq!(
        fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
        "+cpu +memory +pids"
    );
    assert_eq!(
        fs::read_to_string(own.join("berth/cgroup.subtree_control")).unwrap(),
        "+cpu +memory +pids"
    );
    // Nothing above the delegation point is touched.
    assert_eq!(
        fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap(),
        ""
    );

    // Already enabled (as the kernel lists them): nothing is written.
    fs::write(own.join("cgroup.subtree_control"), "cpu memory pids").unwrap();
    root.ensure(&[Controller::Memory, Controller::Pids])
        .unwrap();
    assert_eq!(
        fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
        "cpu memory pids"
    );
    assert_eq!(
        fs::read_to_string(own.join("berth/cgroup.subtree_control")).unwrap(),
        "+cpu +memory +pids"
    );

    let cg = root.container("c1").unwrap();
    cg.create(Controller::Cpu).unwrap();
    let dir = own.join("berth/c1");
    assert_eq!(cg.path(Controller::Cpu).unwrap(), dir);
    assert_eq!(cg.path(Controller::Memory).unwrap(), dir);
    assert_eq!(cg.path(Controller::Blkio).unwrap(), dir);
    assert_eq!(
        cg.paths(&[Controller::Cpu, Controller::Cpuacct, Controller::Memory])
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        cg.path(Controller::NetCls),
        Err(CgroupError::NotOnV2 { .. })
    ));
    fs::write(dir.join("memory.max"), "max").unwrap();
    cg.write(Controller::Memory, "memory.max", "67108864")
        .unwrap();
    assert_eq!(
        cg.read(Controller::Memory, "memory.max").unwrap(),
        "67108864"
    );
    fs::remove_file(dir.join("memory.max")).unwrap();
    cg.remove(Controller::Memory).unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_missing_controller_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CgroupRoot::new(v2_tree(tmp.path(), "cpu memory"), "berth").unwrap();
    let err = root
        .ensure(&[Controller::Cpu, Controller::Blkio])
        .unwrap_err();
    match &err {
        CgroupError::Unavailable { controller, path } => {
            assert_eq!(controller, "io");
            assert_eq!(path, &tmp.path().join("agent.service/cgroup.controllers"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string()
            .contains("cgroup controller io is not available"),
        "{err}"
    );
    assert!(matches!(
        root.ensure(&[Controller::NetCls]),
        Err(CgroupError::NotOnV2 { .. })
    ));
    // Nothing was created or enabled.
    assert!(!tmp.path().join("agent.service/berth").exists());
    assert_eq!(
        fs::read_to_string(tmp.path().join("agent.service/cgroup.subtree_control")).unwrap(),
        ""
    );
}

#[test]
fn v2_absolute_root_enables_from_the_hierarchy_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CgroupRoot::new(v2_tree(tmp.path(), ""), "/berth/pool").unwrap();
    fake_v2_cgroup(&tmp.path().join("berth"));
    fake_v2_cgroup(&tmp.path().join("berth/pool"));
    root.ensure(&[Controller::Memory]).unwrap();
    for dir in ["", "berth", "berth/pool"] {
        let file = tmp.path().join(dir).join("cgroup.subtree_control");
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "+memory +pids",
            "{}",
            file.display()
        );
    }
}

#[test]
fn bad_root_values_and_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v1_tree(tmp.path(), false);
    for bad in ["", "/", "a//b", "a/", "../x", "a/../b", "/a/./b", "a\0b"] {
        let err = CgroupRoot::new(h.clone(), bad).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidRoot { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().starts_with("invalid cgroup root"), "{err}");
    }
    let root = CgroupRoot::new(h, "ok").unwrap();
    for bad in ["", ".", "..", "a/b"] {
        assert!(
            matches!(root.container(bad), Err(CgroupError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert_eq!(
        root.children(Controller::Memory).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn relative_root_needs_the_own_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("memory")).unwrap();
    let h = Hierarchies::from_texts(
        &mountinfo_line(35, &tmp.path().join("memory"), "cgroup", "rw,memory"),
        "",
    )
    .unwrap();
    assert!(matches!(
        CgroupRoot::new(h.clone(), "berth"),
        Err(CgroupError::OwnCgroupUnknown { .. })
    ));
    // An absolute root does not need it.
    CgroupRoot::new(h, "/berth").unwrap();
}
