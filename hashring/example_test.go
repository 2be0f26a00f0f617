package hashring_test

import (
	"errors"
	"fmt"

	"github.com/distkit/distkit/hashring"
)

func Example() {
	r, err := hashring.New(hashring.Config{})
	if err != nil {
		panic(err)
	}
	if err := r.Add("cache-1", "cache-2", "cache-3"); err != nil {
		panic(err)
	}
	owner, _ := r.Locate("user:42")
	replicas, _ := r.AppendN(nil, "user:42", 2)
	fmt.Println(owner, replicas, owner == replicas[0])

	// Adding a duplicate is an error that changes nothing.
	err = r.Add("cache-1")
	fmt.Println(errors.Is(err, hashring.ErrDuplicate), r.Len())
	// Output:
	// cache-3 [cache-3 cache-1] true
	// true 3
}

func ExampleRing_Assign() {
	r, err := hashring.New(hashring.Config{})
	if err != nil {
		panic(err)
	}
	if err := r.Add("a", "b", "c"); err != nil {
		panic(err)
	}
	partitions := make([]string, 12)
	for i := range partitions {
		partitions[i] = fmt.Sprintf("partition-%d", i)
	}
	// With epsilon 0 every node gets exactly ceil(12/3) = 4 partitions.
	owners, _ := r.Assign(partitions, 0)
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	fmt.Println(count)
	// Output:
	// map[a:4 b:4 c:4]
}

func ExampleRing_SetWeight() {
	r, _ := hashring.New(hashring.Config{})
	_ = r.Add("small", "big")
	// A node of weight 3 gets about three times the keys of weight 1.
	if err := r.SetWeight("big", 3); err != nil {
		panic(err)
	}
	count := map[string]int{}
	for i := range 10000 {
		o, _ := r.Locate(fmt.Sprint("key-", i))
		count[o]++
	}
	fmt.Println(count["big"] > 2*count["small"])
	err := r.SetWeight("big", 0)
	fmt.Println(errors.Is(err, hashring.ErrInvalidWeight))
	// Output:
	// true
	// true
}
