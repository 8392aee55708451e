import Foundation
import Testing
import TestSupport
@testable import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// Issue 15 §5: device state files hold keys (efuse.bin): 0600, and no stray copies survive.
@Suite("Device state hygiene")
struct StateHygieneTests {
    func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0
    }

    @Test func stateFilesAre0600AndLeftoversGoWhenTheFolderIsOpened() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-state").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DeviceStore(directory: dir + "/dev")
        try store.create(try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:15")), force: false)
        for p in [store.efusePath, store.flashPath, store.descriptionPath, store.statsPath] {
            #expect(mode(p) == 0o600, "\(p): \(String(mode(p), radix: 8))")
        }
        // What a killed writer leaves: a temporary of a process that is gone (PID above
        // pid_max), a Foundation atomic-write copy; and a state file made readable by an older version.
        let stray = [".efuse.bin.tmp-4194305-00112233aabbccdd", ".dat.nosync1a2b.X3c4d5"]
        for name in stray { try Data([0x42]).write(to: URL(fileURLWithPath: store.directory + "/" + name)) }
        #expect(chmod(store.efusePath, 0o644) == 0)
        let mine = ".stats.json.tmp-\(getpid())-00112233aabbccdd"   // a live writer's (ours): kept
        try Data([0x43]).write(to: URL(fileURLWithPath: store.directory + "/" + mine))
        _ = try store.load()
        let names = try FileManager.default.contentsOfDirectory(atPath: store.directory)
        for name in stray { #expect(!names.contains(name), "\(name) survived") }
        #expect(names.contains(mine))
        #expect(mode(store.efusePath) == 0o600)
    }
}
