from geoflux.entry import main

main()
