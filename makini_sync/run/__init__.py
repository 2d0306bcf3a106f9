"""One sync run: finish what an earlier run left pending, extract and load
package after package, apply the integrity mends after each load, report."""
