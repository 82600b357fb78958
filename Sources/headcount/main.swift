import HeadcountServer
print("headcount")
