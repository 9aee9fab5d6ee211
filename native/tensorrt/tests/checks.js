// Pass/fail counting for the Node drivers over the stand-in TensorRT (binding_over_fake.js,
// facemultitask_over_fake.js): each check prints "FAIL ..." when it fails, and the run ends with
// "<name>: <passed> passed, <failed> failed", the line check-tensorrt.sh reads.
'use strict'

module.exports = function checks(name) {
  let passed = 0
  let failed = 0
  return {
    check(ok, what, detail = '') {
      if (ok) passed++
      else {
        failed++
        console.log(`FAIL ${what}${detail ? `: ${detail}` : ''}`)
      }
    },
    /** Runs `main` and prints the closing line; a throw counts as one more failure. */
    run(main) {
      main().then(
        () => console.log(`${name}: ${passed} passed, ${failed} failed`),
        (e) => {
          console.log(`FAIL ${e && e.stack ? e.stack : e}`)
          console.log(`${name}: ${passed} passed, ${failed + 1} failed`)
        },
      )
    },
  }
}
